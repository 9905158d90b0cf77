//! The ways to get and run istio-canary outside a clone: the GitHub Actions composite action
//! (`.github/actions/compile-check/`) and its example workflow (`examples/`), and the
//! `Dockerfile`. The action's check step is run here the way a runner runs it (its `env`
//! filled from the inputs, its script under `bash -eo pipefail`) with the built binary, on a
//! compiled example that is up to date, out of date, or missing.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

use common::{copy_example, fixtures, manifest_dir, run};

const ACTION_DIR: &str = ".github/actions/compile-check";

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read a YAML file of the repository");
    serde_yaml::from_str(&text).expect("parse a YAML file of the repository")
}

fn action() -> Value {
    yaml(&manifest_dir().join(ACTION_DIR).join("action.yml"))
}

fn steps(action: &Value) -> Vec<Value> {
    action["runs"]["steps"]
        .as_sequence()
        .cloned()
        .unwrap_or_default()
}

fn step(action: &Value, id: &str) -> Value {
    steps(action)
        .into_iter()
        .find(|s| s["id"].as_str() == Some(id))
        .unwrap_or_else(|| panic!("the action has no step {id}"))
}

/// The action's inputs with their defaults.
fn input_defaults(action: &Value) -> BTreeMap<String, String> {
    action["inputs"]
        .as_mapping()
        .expect("the action has inputs")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap_or_default().to_string(),
                v["default"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `${{ inputs.NAME }}` evaluated against `inputs`; any other expression fails the test.
fn evaluate(text: &str, inputs: &BTreeMap<String, String>) -> String {
    let Some(inner) = text
        .trim()
        .strip_prefix("${{")
        .and_then(|t| t.strip_suffix("}}"))
    else {
        assert!(!text.contains("${{"), "unsupported expression: {text}");
        return text.to_string();
    };
    let name = inner
        .trim()
        .strip_prefix("inputs.")
        .unwrap_or_else(|| panic!("unsupported expression: {text}"));
    inputs
        .get(name)
        .unwrap_or_else(|| panic!("{text}: no input {name}"))
        .clone()
}

/// `PATH` with the built binary's directory first, as a runner that installed it has it.
fn path_with_binary() -> String {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_istio-canary"));
    format!(
        "{}:{}",
        bin.parent().expect("the binary's directory").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

struct StepRun {
    code: Option<i32>,
    log: String,
    summary: String,
}

/// Runs the action's `check` step as a runner would: `with` over the defaults, `env` and
/// `working-directory` evaluated, the script in a file run by `bash --noprofile --norc -eo
/// pipefail`, the built binary on PATH.
fn run_check_step(with: &[(&str, &str)]) -> StepRun {
    let action = action();
    let mut inputs = input_defaults(&action);
    for (k, v) in with {
        assert!(inputs.contains_key(*k), "no input {k}");
        inputs.insert((*k).to_string(), (*v).to_string());
    }
    let step = step(&action, "check");
    assert_eq!(step["shell"].as_str(), Some("bash"));
    let runner = tempfile::tempdir().expect("runner temp dir");
    let script = runner.path().join("step.sh");
    std::fs::write(
        &script,
        step["run"].as_str().expect("the step runs a script"),
    )
    .expect("write the step script");
    let summary = runner.path().join("step-summary.md");
    std::fs::write(&summary, "").expect("create the step summary");
    let cwd = evaluate(step["working-directory"].as_str().unwrap_or("."), &inputs);
    let path = path_with_binary();
    let mut command = Command::new("bash");
    let _cache = common::own_cache(&mut command);
    command
        .args(["--noprofile", "--norc", "-eo", "pipefail"])
        .arg(&script)
        .current_dir(fixtures().join("example").join(cwd))
        .env("PATH", path)
        .env("RUNNER_TEMP", runner.path())
        .env("GITHUB_STEP_SUMMARY", &summary);
    for (k, v) in step["env"].as_mapping().expect("the step's env") {
        command.env(
            k.as_str().unwrap_or_default(),
            evaluate(v.as_str().unwrap_or_default(), &inputs),
        );
    }
    let out = command.output().expect("run bash");
    StepRun {
        code: out.status.code(),
        log: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        summary: std::fs::read_to_string(&summary).unwrap_or_default(),
    }
}

#[test]
fn the_ci_action_passes_up_to_date_bundles_and_fails_others_with_the_diff() {
    let (_tmp, out) = copy_example();
    let out_arg = out.to_str().expect("a UTF-8 temp path");

    let clean = run_check_step(&[("out", out_arg)]);
    assert_eq!(clean.code, Some(0), "{}", clean.log);
    assert!(clean.log.contains("is up to date"), "{}", clean.log);
    assert_eq!(clean.summary, "");

    // A hand edit: exit 1, the diff and the regenerate command in the log, nothing posted.
    let plan_md = out.join("PLAN.md");
    let text = std::fs::read_to_string(&plan_md).expect("read PLAN.md");
    std::fs::write(&plan_md, format!("{text}edited by hand\n")).expect("edit PLAN.md");
    let stale = run_check_step(&[("out", out_arg)]);
    assert_eq!(stale.code, Some(1), "{}", stale.log);
    assert!(stale.log.contains("+++ b/PLAN.md"), "{}", stale.log);
    assert!(stale.log.contains("-edited by hand"), "{}", stale.log);
    assert!(
        stale
            .log
            .contains("istio-canary compile --policy canary.yaml --out"),
        "{}",
        stale.log
    );
    assert_eq!(stale.summary, "", "step-summary is off by default");

    // Asked to, it copies the diff into the step summary.
    let summarized = run_check_step(&[("out", out_arg), ("step-summary", "true")]);
    assert_eq!(summarized.code, Some(1), "{}", summarized.log);
    assert!(
        summarized.summary.contains("```diff\n"),
        "{}",
        summarized.summary
    );
    assert!(
        summarized.summary.contains("-edited by hand"),
        "{}",
        summarized.summary
    );

    // No bundles at all is an error (exit 2), with compile's message.
    let missing = run_check_step(&[("out", "no-such-bundles")]);
    assert_eq!(missing.code, Some(2), "{}", missing.log);
    assert!(missing.log.contains("error: "), "{}", missing.log);
    assert_eq!(missing.summary, "");
}

#[test]
fn the_ci_action_runs_only_the_cli_and_posts_nothing() {
    let action = action();
    let steps = steps(&action);
    assert!(!steps.is_empty());
    for s in &steps {
        let id = s["id"].as_str().unwrap_or("?");
        // Only scripts of its own: no other action, so nothing that could post.
        assert!(s.get("uses").is_none(), "step {id} uses another action");
        let script = s["run"].as_str().unwrap_or_default();
        // Inputs reach scripts through env, never pasted into the script.
        assert!(!script.contains("${{"), "step {id} pastes an expression");
        for word in [
            "GITHUB_TOKEN",
            "github.token",
            "gh ",
            "curl",
            "wget",
            "::error",
            "::warning",
        ] {
            assert!(!script.contains(word), "step {id} mentions {word}");
        }
    }
    // The install step builds this package: the action's directory three levels down.
    let install = step(&action, "install");
    let script = install["run"].as_str().unwrap_or_default();
    assert!(
        script.contains("cargo install --locked --path \"$GITHUB_ACTION_PATH/../../..\""),
        "{script}"
    );
    let root = manifest_dir().join(ACTION_DIR).join("../../..");
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    assert!(cargo.contains("name = \"istio-canary\""));
    // Every flag the check step passes is one `compile --help` lists, and --check is one.
    let check = step(&action, "check");
    let script = check["run"].as_str().unwrap_or_default();
    let help = run(&fixtures(), &["compile", "--help"]);
    assert_eq!(help.code, 0);
    let command: Vec<&str> = script
        .lines()
        .filter(|l| l.trim_start().starts_with("istio-canary "))
        .collect();
    assert_eq!(command.len(), 1, "{script}");
    assert!(command[0]
        .trim_start()
        .starts_with("istio-canary compile --check "));
    let flags: Vec<&str> = command[0]
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .collect();
    assert!(flags.contains(&"--check"), "{script}");
    for flag in flags {
        assert!(help.stdout.contains(flag), "compile has no {flag}");
    }
}

#[test]
fn the_example_workflow_uses_the_action_with_inputs_it_has() {
    let workflow = yaml(&manifest_dir().join("examples/compile-check-workflow.yml"));
    assert_eq!(
        serde_yaml::to_string(&workflow["permissions"]).unwrap_or_default(),
        "contents: read\n",
        "read-only token"
    );
    let inputs = input_defaults(&action());
    let mut used = 0;
    for job in workflow["jobs"].as_mapping().expect("jobs").values() {
        for s in job["steps"].as_sequence().expect("steps") {
            let Some(uses) = s["uses"].as_str() else {
                continue;
            };
            let Some(path) = uses
                .strip_prefix("OWNER/istio-canary/")
                .and_then(|p| p.split_once('@'))
                .map(|(p, _)| p)
            else {
                continue;
            };
            assert_eq!(path, ACTION_DIR);
            used += 1;
            for k in s["with"].as_mapping().expect("with").keys() {
                let k = k.as_str().unwrap_or_default();
                assert!(inputs.contains_key(k), "the action has no input {k}");
            }
        }
    }
    assert_eq!(used, 1, "the example uses the action once");
}

#[test]
fn the_dockerfile_builds_the_locked_release_binary_and_ships_only_it() {
    let text = std::fs::read_to_string(manifest_dir().join("Dockerfile")).expect("Dockerfile");
    let stages: Vec<&str> = text.split("\nFROM ").skip(1).collect();
    assert_eq!(stages.len(), 2, "a build stage and the image");
    assert!(stages[0].contains("cargo build --release --locked --bin istio-canary"));
    let image: Vec<&str> = stages[1]
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    let copies: Vec<&&str> = image.iter().filter(|l| l.starts_with("COPY")).collect();
    assert_eq!(
        copies,
        [&"COPY --from=build /istio-canary /usr/local/bin/istio-canary"]
    );
    assert!(
        !stages[1].contains("RUN "),
        "the image adds nothing but the binary"
    );
    assert!(image.contains(&"ENTRYPOINT [\"/usr/local/bin/istio-canary\"]"));
    assert!(image
        .iter()
        .any(|l| l.starts_with("USER ") && !l.contains("root")));
}

/// The Python modules the tests and the stand-in import that are not in Python's standard
/// library, with the package of `.ci/requirements.txt` that provides each.
const PYTHON_PACKAGES: &[(&str, &str)] = &[
    ("yaml", "PyYAML"),
    ("jsonschema", "jsonschema"),
    ("kubernetes_validate", "kubernetes-validate"),
];
/// The standard-library modules they import.
const PYTHON_STDLIB: &[&str] = &["copy", "functools", "json", "os", "re", "sys"];

/// Every module named by an `import a, b` or `from a import …` line of a Python text (the
/// `.py` files, the stand-in, and the scripts embedded in `tests/*.rs`).
fn python_imports(text: &str) -> Vec<String> {
    let mut modules = Vec::new();
    for line in text.lines().map(str::trim_start) {
        let names = if let Some(rest) = line.strip_prefix("import ") {
            rest.split(',').collect::<Vec<_>>()
        } else if let Some((module, _)) = line
            .strip_prefix("from ")
            .and_then(|rest| rest.split_once(" import "))
        {
            vec![module]
        } else {
            continue;
        };
        for name in names {
            let top = name.trim().split(['.', ' ']).next().unwrap_or_default();
            if !top.is_empty() {
                modules.push(top.to_string());
            }
        }
    }
    modules
}

/// `.ci/run` must never skip a check silently: every third-party module a Python script of the
/// tests imports is pinned in `.ci/requirements.txt`, which `.ci/run` installs into its venv.
#[test]
fn ci_run_installs_every_python_module_the_tests_import() {
    let root = manifest_dir();
    let requirements = std::fs::read_to_string(root.join(".ci/requirements.txt"))
        .expect("read .ci/requirements.txt");
    let pinned: Vec<&str> = requirements
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once("=="))
        .map(|(name, _)| name)
        .collect();
    let mut sources = vec![root.join("fixtures/istioctl/istioctl")];
    for entry in std::fs::read_dir(root.join("tests")).expect("list tests/") {
        let path = entry.expect("read tests/").path();
        if matches!(path.extension().and_then(|e| e.to_str()), Some("py" | "rs")) {
            sources.push(path);
        }
    }
    let mut seen = Vec::new();
    for source in &sources {
        let text = std::fs::read_to_string(source).expect("read a test source");
        for module in python_imports(&text) {
            if PYTHON_STDLIB.contains(&module.as_str()) {
                continue;
            }
            let package = PYTHON_PACKAGES
                .iter()
                .find(|(m, _)| *m == module)
                .map(|(_, p)| *p)
                .unwrap_or_else(|| {
                    panic!(
                        "{} imports `{module}`: add it to PYTHON_STDLIB, or to PYTHON_PACKAGES \
                         and .ci/requirements.txt",
                        source.display()
                    )
                });
            assert!(
                pinned.contains(&package),
                "{} imports `{module}`, but .ci/requirements.txt does not pin {package}",
                source.display()
            );
            seen.push(package);
        }
    }
    for (_, package) in PYTHON_PACKAGES {
        assert!(seen.contains(package), "nothing imports {package} any more");
    }
    let run = std::fs::read_to_string(root.join(".ci/run")).expect("read .ci/run");
    assert!(run.contains("-m venv") && run.contains("-r .ci/requirements.txt"));
}

/// `--help` of `istio-canary SUBCOMMAND`.
fn help_of(subcommand: &str) -> String {
    let help = run(&fixtures(), &[subcommand, "--help"]);
    assert_eq!(help.code, 0, "istio-canary has no {subcommand}");
    help.stdout
}

/// Holds `words` (an istio-canary command line without the binary) to the CLI: a subcommand it
/// has, and flags its `--help` lists.
fn assert_cli_has(words: &[String]) {
    let help = help_of(&words[0]);
    for flag in words.iter().filter(|w| w.starts_with("--")) {
        assert!(help.contains(flag.as_str()), "{} has no {flag}", words[0]);
    }
}

/// A temp dir laid out as the fleet examples expect: `clusters/<cluster>/canary.yaml` (the
/// scenarios) and `bundles/<name>/`, compiled.
fn fleet_repository() -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("a temp dir");
    std::os::unix::fs::symlink(fixtures().join("scenarios"), repo.path().join("clusters"))
        .expect("link the scenarios as clusters/");
    let r = run(
        repo.path(),
        &[
            "compile",
            "--policies",
            "clusters",
            "--out",
            "bundles",
            "--quiet",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    repo
}

#[test]
fn the_fleet_workflow_runs_a_shard_per_matrix_job_with_commands_the_cli_has() {
    let workflow = yaml(&manifest_dir().join("examples/fleet-matrix-workflow.yml"));
    assert_eq!(
        serde_yaml::to_string(&workflow["permissions"]).unwrap_or_default(),
        "contents: read\n",
        "read-only token"
    );
    let job = &workflow["jobs"]["bundles-up-to-date"];
    let shards = job["strategy"]["matrix"]["shard"]
        .as_sequence()
        .expect("a matrix of shards")
        .len();
    let steps = job["steps"].as_sequence().expect("steps");
    let check = steps
        .iter()
        .find(|s| s["name"].as_str() == Some("Check this shard's bundles"))
        .expect("the check step");
    assert_eq!(
        check["env"]["SHARD"].as_str(),
        Some("${{ matrix.shard }}/${{ strategy.job-total }}")
    );
    let script = check["run"].as_str().expect("a script");
    let commands: Vec<&str> = script
        .lines()
        .filter(|l| l.trim_start().starts_with("istio-canary "))
        .collect();
    assert_eq!(commands.len(), 1, "{script}");
    let words: Vec<String> = commands[0]
        .split_whitespace()
        .skip(1)
        .map(String::from)
        .collect();
    assert_cli_has(&words);
    let cache = steps
        .iter()
        .find(|s| s["uses"].as_str() == Some("actions/cache@v4"))
        .expect("the render cache is kept with actions/cache");
    assert!(script.contains(&format!(
        "--cache-dir {}",
        cache["with"]["path"].as_str().unwrap_or_default()
    )));
    // Run as each matrix job runs it: every shard passes on the compiled fleet.
    let repo = fleet_repository();
    for shard in 0..shards {
        let mut command = Command::new("bash");
        let _cache = common::own_cache(&mut command);
        let path = path_with_binary();
        let out = command
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
            .current_dir(repo.path())
            .env("PATH", path)
            .env("SHARD", format!("{shard}/{shards}"))
            .output()
            .expect("run bash");
        let log = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "shard {shard}: {log}");
        assert!(log.contains("are up to date"), "shard {shard}: {log}");
    }
}

#[test]
fn the_argo_template_fans_out_shards_sharing_a_cache_volume_with_commands_the_cli_has() {
    let template = yaml(&manifest_dir().join("examples/fleet-argo-workflow.yaml"));
    assert_eq!(template["kind"].as_str(), Some("WorkflowTemplate"));
    let templates = template["spec"]["templates"]
        .as_sequence()
        .expect("templates");
    let fan_out = &templates[0]["steps"][0][0];
    assert_eq!(
        fan_out["withSequence"]["count"].as_str(),
        Some("{{workflow.parameters.shards}}")
    );
    let check = templates
        .iter()
        .find(|t| t["name"].as_str() == fan_out["template"].as_str())
        .expect("the template the fan-out runs");
    let args: Vec<String> = check["container"]["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap_or_default().to_string())
        .collect();
    assert_cli_has(&args);
    let mount = check["container"]["volumeMounts"][0]["mountPath"]
        .as_str()
        .unwrap_or_default();
    let cache_at = args
        .iter()
        .position(|a| a == "--cache-dir")
        .expect("--cache-dir");
    assert_eq!(
        args[cache_at + 1],
        mount,
        "the cache is on the shared volume"
    );
    // Run each pod's arguments as Argo substitutes them, sharing one cache.
    let shards: usize = template["spec"]["arguments"]["parameters"]
        .as_sequence()
        .expect("parameters")
        .iter()
        .find(|p| p["name"].as_str() == Some("shards"))
        .and_then(|p| p["value"].as_str())
        .and_then(|v| v.parse().ok())
        .expect("a default number of shards");
    let repo = fleet_repository();
    let cache = repo.path().join("shared-cache");
    for shard in 0..shards {
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("{{inputs.parameters.shard}}", &shard.to_string())
                    .replace("{{workflow.parameters.shards}}", &shards.to_string())
                    .replace(mount, cache.to_str().expect("a UTF-8 temp path"))
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run(repo.path(), &args);
        assert_eq!(r.code, 0, "shard {shard}: {}", r.stderr);
    }
    assert!(cache.join("renders").is_dir());
}
