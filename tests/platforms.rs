//! Multi-platform pins (`spec.istioctl."V".platforms`): a compile uses the binary of the
//! platform it runs on, says which, and writes the same bytes whichever platform's binary
//! rendered, because the output records every platform's pin. Another platform is simulated
//! with `ISTIO_CANARY_PLATFORM` and a copy of the stand-in whose bytes (so digest) differ.

mod common;

use std::path::Path;
use std::process::Command;

use common::{fixtures, read_tree, sha256_hex, snapshot_settings};

/// The example's upgrade in `dir`, with its new version pinned per platform: `linux/amd64`
/// and `darwin/arm64`, each its own copy of the stand-in with its own digest.
fn multi_platform_policy(dir: &Path) {
    let example = fixtures().join("example");
    let text = std::fs::read_to_string(example.join("canary.yaml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let version = |side: &str| doc["spec"][side]["version"].as_str().unwrap().to_string();
    let (from, to) = (version("from"), version("to"));
    std::fs::copy(example.join("iop.yaml"), dir.join("iop.yaml")).unwrap();
    let standin = std::fs::read(fixtures().join("istioctl/istioctl")).unwrap();
    let mut pins = String::new();
    for (platform, folder) in [
        ("linux/amd64", "linux-amd64"),
        ("darwin/arm64", "darwin-arm64"),
    ] {
        let binary = dir.join(folder).join(format!("istioctl-{to}"));
        std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
        let mut bytes = standin.clone();
        bytes.extend_from_slice(format!("# the {platform} build\n").as_bytes());
        std::fs::write(&binary, &bytes).unwrap();
        let mut perms = std::fs::metadata(&binary).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&binary, perms).unwrap();
        pins.push_str(&format!(
            "        {platform}: {{path: {folder}/istioctl-{to}, sha256: {}}}\n",
            sha256_hex(&bytes)
        ));
    }
    let old = fixtures().join(format!("istioctl/istioctl-{from}"));
    let policy = format!(
        "apiVersion: istio-canary.dev/v1alpha1\nkind: CanaryUpgrade\nmetadata:\n  name: multi-platform\nspec:\n  istioOperator: iop.yaml\n  from:\n    version: {from}\n  to:\n    version: {to}\n  istioctl:\n    \"{from}\": {{path: {}, sha256: {}}}\n    \"{to}\":\n      platforms:\n{pins}  waves:\n  - name: canary\n    namespaces: [bookinfo]\n",
        old.display(),
        sha256_hex(&standin)
    );
    std::fs::write(dir.join("canary.yaml"), policy).unwrap();
}

/// Compiles `dir`'s policy as if on `platform` into `dir/out-<n>`.
fn compile_on(dir: &Path, platform: Option<&str>, out: &str) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_istio-canary"));
    command
        .current_dir(dir)
        .args(["compile", "--policy", "canary.yaml", "--out", out]);
    match platform {
        Some(p) => command.env("ISTIO_CANARY_PLATFORM", p),
        None => command.env_remove("ISTIO_CANARY_PLATFORM"),
    };
    let r = command.output().expect("run istio-canary");
    (
        r.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

#[test]
fn two_platforms_compile_the_same_bytes_and_each_says_which_binary_it_ran() {
    let tmp = tempfile::tempdir().unwrap();
    multi_platform_policy(tmp.path());
    let (code, linux) = compile_on(tmp.path(), Some("linux/amd64"), "out-linux");
    assert_eq!(code, 0, "{linux}");
    let (code, darwin) = compile_on(tmp.path(), Some("darwin/arm64"), "out-darwin");
    assert_eq!(code, 0, "{darwin}");
    let linux_tree = read_tree(&tmp.path().join("out-linux"));
    assert_eq!(linux_tree, read_tree(&tmp.path().join("out-darwin")));
    assert!(
        linux.contains(": the linux/amd64 binary of its pin"),
        "{linux}"
    );
    assert!(
        darwin.contains(": the darwin/arm64 binary of its pin"),
        "{darwin}"
    );
    // plan.json and PLAN.md record both platforms' digests, so neither depends on the machine.
    let plan: serde_json::Value = serde_json::from_str(&linux_tree["plan.json"]).unwrap();
    let recorded: Vec<&String> = plan["inputs"]["istioctl"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(recorded.len(), 3, "{recorded:?}");
    assert!(recorded.iter().any(|k| k.ends_with(" darwin/arm64")));
    assert!(recorded.iter().any(|k| k.ends_with(" linux/amd64")));
    assert!(linux_tree["PLAN.md"].contains(" darwin/arm64 | `"));
}

#[test]
fn a_platform_the_pin_lacks_is_refused_with_the_platforms_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    multi_platform_policy(tmp.path());
    let (code, stderr) = compile_on(tmp.path(), Some("linux/arm64"), "out");
    assert_eq!(code, 2, "{stderr}");
    assert!(!tmp.path().join("out").exists());
    let (code, bad) = compile_on(tmp.path(), Some("plan9/386"), "out");
    assert_eq!(code, 2, "{bad}");
    let shown = format!("{stderr}\n{bad}");
    snapshot_settings().bind(|| insta::assert_snapshot!("platform-not-pinned", shown));
}
