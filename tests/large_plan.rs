//! The review documents of a large plan: 2,000 namespaces in 20 waves, compiled in process with
//! the stand-in istioctl (the way `benches/scale.rs` does), with an inventory that gives the plan
//! exceptions: a namespace in no wave that follows a revision tag, and one wave namespace that
//! carries `istio-injection`. PLAN.md must stay small and still name every exception, its
//! commands must be loops over the wave directories, and plan.json's grouped injection table must
//! give back every namespace's row. Sizes are asserted, never times.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use istio_canary::check::{injection_rows, parse_plan};
use istio_canary::schema::PLAN_JSON;

const NAMESPACES: usize = 2000;
const WAVES: usize = 20;
/// PLAN.md's bound at 2,000 namespaces (10,000 namespaces stay under 300 KB: see the README's
/// Performance section). Before grouping it was 1.6 MB.
const PLAN_MD_LIMIT: usize = 120_000;

fn setup(dir: &Path) -> std::path::PathBuf {
    setup_with(dir, 0)
}

/// `setup`, with a StatefulSet `app` in each of the first `workloads` namespaces of wave 3 (a
/// kind the renders hold none of, so the inventory need not hold the control plane's).
fn setup_with(dir: &Path, workloads: usize) -> std::path::PathBuf {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let standin = fixtures.join("istioctl");
    let digest =
        istio_canary::policy::sha256_hex(&std::fs::read(standin.join("istioctl")).unwrap());
    std::fs::copy(fixtures.join("example/iop.yaml"), dir.join("iop.yaml")).unwrap();
    let mut policy = format!(
        "apiVersion: istio-canary.dev/v1alpha1\nkind: CanaryUpgrade\nmetadata:\n  name: large\nspec:\n  istioOperator: iop.yaml\n  inventory: inventory.yaml\n  from:\n    version: 1.13.5\n  to:\n    version: 1.14.1\n  istioctl:\n    \"1.13.5\": {{path: {0}/istioctl-1.13.5, sha256: {digest}}}\n    \"1.14.1\": {{path: {0}/istioctl-1.14.1, sha256: {digest}}}\n  tags:\n  - name: prod-stable\n  waves:\n",
        standin.display()
    );
    let per = NAMESPACES / WAVES;
    let mut inventory = String::from("apiVersion: v1\nkind: List\nitems:\n");
    let namespace = |inv: &mut String, name: &str, labels: &[(&str, &str)]| {
        let _ = write!(
            inv,
            "- apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: {name}\n    labels:\n      kubernetes.io/metadata.name: {name}\n"
        );
        for (k, v) in labels {
            let _ = writeln!(inv, "      {k}: '{v}'");
        }
    };
    namespace(&mut inventory, "istio-system", &[]);
    for w in 0..WAVES {
        let names: Vec<String> = (w * per..(w + 1) * per)
            .map(|i| format!("ns-{i:05}"))
            .collect();
        let _ = writeln!(
            policy,
            "  - name: wave-{w:02}\n    namespaces: [{}]",
            names.join(", ")
        );
        for name in &names {
            // With workloads, the wave's first namespace also carries `istio-injection`, which
            // its phase removes by a label command (not a restart).
            let labels: &[(&str, &str)] = if workloads > 0 && *name == format!("ns-{:05}", 3 * per)
            {
                &[("istio-injection", "enabled")]
            } else {
                &[("istio.io/rev", "1-13-5")]
            };
            namespace(&mut inventory, name, labels);
        }
    }
    for i in 0..workloads {
        let _ = write!(
            inventory,
            "- apiVersion: apps/v1\n  kind: StatefulSet\n  metadata: {{name: app, namespace: ns-{:05}}}\n  spec:\n    serviceName: app\n    selector: {{matchLabels: {{app: app}}}}\n    template:\n      metadata: {{labels: {{app: app}}}}\n      spec: {{containers: [{{name: app, image: example.com/app:1.0}}]}}\n",
            3 * per + i
        );
    }
    // In no wave: follows the tag, moves in the tag's phase.
    namespace(
        &mut inventory,
        "checkout",
        &[("istio.io/rev", "prod-stable")],
    );
    std::fs::write(dir.join("inventory.yaml"), inventory).unwrap();
    let path = dir.join("canary.yaml");
    std::fs::write(&path, policy).unwrap();
    path
}

#[test]
fn a_large_plan_stays_readable_and_plan_json_keeps_every_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let policy = setup(dir.path());
    let config = istio_canary::CompileConfig::new(policy.clone(), dir.path().join("out"));
    let compiled = istio_canary::compile(&config).unwrap_or_else(|e| panic!("{e}"));
    let md = &compiled.files["PLAN.md"];
    let json = &compiled.files[PLAN_JSON];
    // A plan this large is made on several threads (rollbacks, injection tables, layout,
    // digests): on one, it is the same, byte for byte.
    for jobs in [1, 3] {
        let one = istio_canary::CompileConfig {
            jobs: std::num::NonZeroUsize::new(jobs).unwrap(),
            ..config.clone()
        };
        let again = istio_canary::compile(&one).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            again.files == compiled.files,
            "--jobs {jobs} changed the output"
        );
    }

    assert!(md.len() < PLAN_MD_LIMIT, "PLAN.md is {} bytes", md.len());
    // The tag follower is named in both injection tables; the waves are rows with a count.
    assert!(
        md.contains("| in no wave, follows tag `prod-stable`: `checkout` |"),
        "{}",
        &md[..md.len().min(6000)]
    );
    assert!(md.contains("| wave `wave-07`: 100 namespaces (one file each in `"));
    // A wave's commands are loops over its directory, never one line per namespace.
    assert!(
        !md.contains("kubectl label namespace ns-"),
        "per-namespace label commands"
    );
    assert!(!md.contains("-n ns-00"), "per-namespace restarts");
    let wave = compiled
        .plan
        .phases
        .iter()
        .find(|p| p.name == "migrate-wave-03")
        .unwrap();
    for command in [
        format!("kubectl label -f {}/ istio.io/rev=1-14-1 --overwrite", wave.dir),
        format!("kubectl label -f rollback/{}/ istio.io/rev=1-13-5 --overwrite", wave.dir),
        format!("kubectl get -f {}/ -o name | cut -d/ -f2 | xargs -n1 kubectl rollout restart deployment,statefulset,daemonset -n", wave.dir),
    ] {
        assert!(md.contains(&command), "PLAN.md lacks {command}");
    }

    // Run as written, in bash, against a stand-in kubectl that logs each call and answers
    // `get -f DIR/ -o name` from the directory's files: each namespace of the wave is restarted
    // once and the checks select exactly the wave.
    let phase = compiled
        .plan
        .phases
        .iter()
        .position(|p| p.dir == wave.dir)
        .unwrap();
    let text = &compiled.texts.phases[phase];
    let out = dir.path().join("bundle");
    for (path, body) in compiled
        .files
        .iter()
        .filter(|(p, _)| p.starts_with(&wave.dir))
    {
        let path = out.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    // A stand-in on PATH, so that `xargs` finds it too.
    let bin = dir.path().join("bin");
    stand_in(&bin, "istioctl", "#!/bin/sh\n");
    stand_in(
        &bin,
        "kubectl",
        "#!/bin/sh\nif [ \"$1 $2 $4 $5\" = 'get -f -o name' ]; then sed -n 's/^  name: /namespace\\//p' \"$3\"*.yaml; else (IFS='|'; echo \"$*\"); fi\n",
    );
    let script = format!("{}\n{}\n", text.commands.join("\n"), text.checks.join("\n"));
    let log = run_bash(&script, &[&bin], &out);
    let calls: Vec<&str> = log.lines().collect();
    let restarted: Vec<&str> = calls
        .iter()
        .filter_map(|c| c.strip_prefix("rollout|restart|deployment,statefulset,daemonset|-n|"))
        .collect();
    assert_eq!(restarted, wave.namespaces, "{log}");
    let selector = format!(
        "kubernetes.io/metadata.name in ({})",
        wave.namespaces.join(",")
    );
    assert!(
        calls.contains(&format!("get|namespaces|-l|{selector},istio.io/rev!=1-14-1").as_str()),
        "{log}"
    );
    assert!(
        calls.contains(&format!("get|namespaces|-l|{selector},istio-injection").as_str()),
        "{log}"
    );
    assert!(
        calls.contains(&format!("label|-f|{}/|istio.io/rev=1-14-1|--overwrite", wave.dir).as_str()),
        "{log}"
    );

    // plan.json: every namespace once, with the plan's own row, in both tables.
    let doc = parse_plan(Path::new(PLAN_JSON), json).unwrap();
    for (table, rows) in [
        (&doc.injection, &compiled.plan.injection),
        (&doc.rollback_injection, &compiled.plan.rollback_injection),
    ] {
        assert!(table.namespaces.is_empty(), "one row per namespace written");
        assert!(table.rows.len() <= WAVES + 1, "{} groups", table.rows.len());
        let read: BTreeMap<String, (Option<String>, Vec<String>)> = injection_rows(table)
            .into_iter()
            .map(|r| (r.namespace, (r.tag, r.states)))
            .collect();
        assert_eq!(read.len(), rows.len(), "a namespace twice or missing");
        assert_eq!(rows.len(), NAMESPACES + 1);
        for r in rows {
            assert_eq!(
                read.get(&r.namespace),
                Some(&(
                    r.tag.clone(),
                    r.states.iter().map(|c| c.to_string()).collect()
                )),
                "{}",
                r.namespace
            );
        }
    }
}

/// With an inventory, a wave restarts each workload whose injection it changes with one
/// `kubectl patch`. Past ten, PLAN.md runs them from plan.json (`istio-canary show DIR
/// --restarts | sh -e`) instead of listing each: run as written, every workload of the wave is
/// patched once, and so is each by the rollback.
#[test]
fn many_restarts_run_from_plan_json_not_one_line_each() {
    const WORKLOADS: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let policy = setup_with(dir.path(), WORKLOADS);
    let out = dir.path().join("out");
    let config = istio_canary::CompileConfig::new(policy, out.clone());
    let compiled = istio_canary::compile(&config).unwrap_or_else(|e| panic!("{e}"));
    let md = &compiled.files["PLAN.md"];
    assert!(
        !md.contains("kubectl patch statefulset"),
        "one line per workload"
    );
    let phase = compiled
        .plan
        .phases
        .iter()
        .position(|p| p.name == "migrate-wave-03")
        .unwrap();
    let wave = &compiled.plan.phases[phase];
    let rollback = format!("rollback/{}", wave.dir);
    for d in [&wave.dir, &rollback] {
        let line = format!("istio-canary show {d} --out . --restarts | sh -e");
        assert!(md.contains(&line), "PLAN.md lacks {line}");
    }
    // The wave also removes a label by command, which is not a restart.
    let removal = format!(
        "kubectl label namespace {} istio-injection-",
        wave.namespaces[0]
    );
    assert!(
        compiled.texts.phases[phase].commands.contains(&removal),
        "{:?}",
        compiled.texts.phases[phase].commands
    );
    istio_canary::write::write_atomic(&out, &compiled.files, false, &[]).unwrap();

    // A stand-in kubectl that logs each call; the real binary on PATH.
    let bin = dir.path().join("bin");
    stand_in(&bin, "kubectl", "#!/bin/sh\n(IFS='|'; echo \"$*\")\n");
    let tool = Path::new(env!("CARGO_BIN_EXE_istio-canary"));
    let tools = tool.parent().unwrap();
    let rollback_text = compiled
        .texts
        .rollbacks
        .iter()
        .find(|r| r.phase_index == wave.index)
        .unwrap();
    for (commands, value) in [
        (&compiled.texts.phases[phase].commands, "\"1-14-1\""),
        (&rollback_text.commands, "null"),
    ] {
        let script: Vec<&str> = commands
            .iter()
            .map(String::as_str)
            .filter(|c| c.starts_with('#') || c.starts_with("istio-canary"))
            .collect();
        assert_eq!(script.len(), 2, "{commands:?}");
        let log = run_bash(&script.join("\n"), &[&bin, tools], &out);
        // Restarts only: the label removal is a command of its own.
        assert!(log.lines().all(|l| l.starts_with("patch|")), "{log}");
        let patched: Vec<String> = log
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("patch|statefulset.apps|-n|")?;
                let (ns, rest) = rest.split_once('|')?;
                rest.contains(&format!("\"istio-canary.dev/restarted-for\":{value}"))
                    .then(|| ns.to_string())
            })
            .collect();
        let expected: Vec<String> = wave.namespaces[..WORKLOADS].to_vec();
        assert_eq!(patched, expected, "{log}");
    }

    // A rollback directory that does not exist is an error naming the ones that do.
    let r = std::process::Command::new(tool)
        .args(["show", "rollback/nope", "--out", ".", "--restarts"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    let stderr = String::from_utf8(r.stderr).unwrap();
    assert!(
        stderr.contains("no rollback \"rollback/nope\" in plan \"large\""),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("  {rollback}\n")), "{stderr}");
    // A phase without pod-template patches says so, and prints nothing.
    let r = std::process::Command::new(tool)
        .args(["show", "01", "--out", ".", "--restarts"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(0));
    assert!(r.stdout.is_empty());
    assert!(String::from_utf8(r.stderr)
        .unwrap()
        .ends_with("has no pod-template patches\n"));
}

/// Writes an executable stand-in `name` into `bin`.
fn stand_in(bin: &Path, name: &str, body: &str) {
    std::fs::create_dir_all(bin).unwrap();
    let path = bin.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// Runs `script` in bash (`-euo pipefail`) in `cwd` with `dirs` first on PATH; it must succeed.
/// Returns what it printed on stdout.
fn run_bash(script: &str, dirs: &[&Path], cwd: &Path) -> String {
    let mut path: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    path.push(std::env::var("PATH").unwrap_or_default());
    let run = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .env("PATH", path.join(":"))
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8(run.stdout).unwrap()
}
