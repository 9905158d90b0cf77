//! `istio-canary init`: the starter policy it writes, what it says to do next, and that doing
//! exactly that (the binaries at the paths it names, each `FILL-IN` replaced by a digest, the
//! command it prints) compiles. It never replaces a file, and it refuses, writing nothing, what
//! `compile` would refuse before running istioctl. Every message is snapshotted.

mod common;

use std::path::Path;

use common::{fixtures, read_tree, run, snapshot_settings, standin_sha256};

fn snapshot(name: &str, text: &str) {
    snapshot_settings().bind(|| insta::assert_snapshot!(name, text));
}

/// A temp dir holding the example's IstioOperator spec as `iop.yaml`.
fn workspace() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        fixtures().join("example/iop.yaml"),
        tmp.path().join("iop.yaml"),
    )
    .expect("copy the spec");
    tmp
}

const ARGS: &[&str] = &[
    "init",
    "--from",
    "1.13.5",
    "--to",
    "1.14.1",
    "--istio-operator",
    "iop.yaml",
    "--namespace",
    "bookinfo",
    "--namespace",
    "shop",
];

#[test]
fn the_starter_compiles_once_the_pins_are_filled_in_with_the_command_init_prints() {
    let tmp = workspace();
    let dir = tmp.path();
    let r = run(dir, ARGS);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    snapshot("init-next-steps", &r.stderr);
    let next = init_next_command(&r.stderr);
    let policy = std::fs::read_to_string(dir.join("canary.yaml")).expect("the starter");
    snapshot("init-starter-canary-yaml", &policy);

    // As written, compile points at the first placeholder.
    let r = run(
        dir,
        &["compile", "--policy", "canary.yaml", "--out", "bundles"],
    );
    assert_eq!(r.code, 2);
    snapshot("init-error-compile-before-the-pins", &r.stderr);

    // Do what init said: the binaries at the paths it names (here the stand-in, which takes its
    // version from its file name), each FILL-IN replaced with the binary's sha256.
    std::fs::create_dir(dir.join("vendor")).expect("vendor/");
    for version in ["1.13.5", "1.14.1"] {
        std::os::unix::fs::symlink(
            fixtures().join(format!("istioctl/istioctl-{version}")),
            dir.join(format!("vendor/istioctl-{version}")),
        )
        .expect("vendor a binary");
    }
    let filled = policy.replace(
        "sha256: FILL-IN ",
        &format!("sha256: {} ", standin_sha256()),
    );
    std::fs::write(dir.join("canary.yaml"), filled).expect("fill in the pins");
    let words: Vec<&str> = next.split_whitespace().collect();
    assert_eq!(words[0], "istio-canary");
    let r = run(dir, &words[1..]);
    assert_eq!(r.code, 0, "{next}: {}", r.stderr);
    let out = read_tree(&dir.join("bundles"));
    assert!(out.contains_key("PLAN.md"), "{:?}", out.keys());
    assert!(
        out.keys().any(|k| k.starts_with("03-migrate-canary/")),
        "{:?}",
        out.keys()
    );
    assert!(out.keys().any(|k| k.starts_with("04-migrate-rest/")));
}

/// The last line of init's next steps: the command to run.
fn init_next_command(stderr: &str) -> String {
    stderr
        .lines()
        .last()
        .map(str::trim)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn init_never_replaces_a_file_a_link_or_a_directory() {
    let tmp = workspace();
    let dir = tmp.path();
    std::fs::write(dir.join("canary.yaml"), "mine\n").expect("an existing policy");
    std::os::unix::fs::symlink("nowhere", dir.join("dangling.yaml")).expect("a link");
    std::fs::create_dir(dir.join("a-dir")).expect("a directory");
    // (check's reader: a dangling link is an entry, not an error)
    let tree = |dir: &Path| istio_canary::check::read_tree(dir).expect("read the dir");
    let before = tree(dir);
    for (name, target) in [
        ("file", "canary.yaml"),
        ("dangling-link", "dangling.yaml"),
        ("directory", "a-dir"),
    ] {
        let mut args = ARGS.to_vec();
        args.extend(["--policy", target]);
        let r = run(dir, &args);
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        assert_eq!(tree(dir), before, "{name}");
        assert_eq!(
            std::fs::read_link(dir.join("dangling.yaml")).ok(),
            Some(Path::new("nowhere").to_path_buf())
        );
        snapshot(&format!("init-error-exists-{name}"), &r.stderr);
    }
}

#[test]
fn init_refuses_what_compile_would_refuse_and_writes_nothing() {
    let cases: &[(&str, &[&str])] = &[
        ("downgrade", &["--from", "1.14.1", "--to", "1.13.5"]),
        ("same-version", &["--from", "1.14.1", "--to", "1.14.1"]),
        ("bad-version", &["--from", "1.14", "--to", "1.15.0"]),
        ("spec-missing", &["--istio-operator", "missing.yaml"]),
        ("system-namespace", &["--namespace", "kube-system"]),
        ("quote-in-name", &["--name", "x\"\n  evil: 1"]),
        (
            "policy-dir-missing",
            &["--policy", "no-such-dir/canary.yaml"],
        ),
    ];
    for (name, extra) in cases {
        let tmp = workspace();
        let dir = tmp.path();
        let before = read_tree(dir);
        // The case's flags replace the defaults of the same name.
        let mut args: Vec<&str> = vec!["init"];
        let given = |flag: &str| extra.contains(&flag);
        for pair in ARGS[1..].chunks(2) {
            if !given(pair[0]) {
                args.extend(pair);
            }
        }
        args.extend(extra.iter());
        let r = run(dir, &args);
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        assert_eq!(r.stdout, "", "{name}");
        assert_eq!(read_tree(dir), before, "{name} wrote something");
        snapshot(
            &format!("init-error-{name}"),
            &r.stderr.replace(&dir.display().to_string(), "[DIR]"),
        );
    }
}

#[test]
fn init_without_a_namespace_is_a_usage_error() {
    let tmp = workspace();
    // ARGS up to the first --namespace.
    let r = run(tmp.path(), &ARGS[..7]);
    assert_eq!(r.code, 2);
    assert!(!tmp.path().join("canary.yaml").exists());
    snapshot("init-error-no-namespace", &r.stderr);
}
