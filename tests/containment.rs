//! Containment of `--out`: the swap never deletes an input of the compile, and a symlinked
//! `--out` is written through to its target. Each case builds its own temp dir (inputs placed
//! inside a previous `--out`), runs the binary there, and checks the exit code, the message
//! (snapshotted), that the whole temp dir is byte-for-byte as it was, and that the fixtures it
//! points at are unchanged.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{fixtures, read_tree, run, snapshot_settings, standin_sha256};

/// A temp dir with `work/` (the working directory of the run) inside, so that anything written
/// beside `work/` is seen too.
struct Sandbox {
    tmp: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("work")).unwrap();
        Sandbox { tmp }
    }

    fn work(&self) -> PathBuf {
        self.tmp.path().join("work")
    }

    /// A previous compile's output at `work/<rel>`.
    fn previous_out(&self, rel: &str) -> PathBuf {
        let out = self.work().join(rel);
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join(".istio-canary"), "# previous compile\n").unwrap();
        std::fs::write(out.join("PLAN.md"), "previous plan\n").unwrap();
        out
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.work().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A copy of the stand-in istioctl at `work/<rel>` (its name tells it its version).
    fn istioctl_copy(&self, rel: &str) -> PathBuf {
        let path = self.work().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::copy(fixtures().join("istioctl/istioctl"), &path).unwrap();
        path
    }

    /// Everything under the temp dir, symlinks listed as `-> target` (not followed).
    fn snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        walk(self.tmp.path(), self.tmp.path(), &mut out);
        out
    }

    /// Runs the binary in `work/`, and requires exit 2, an empty stdout, and the temp dir and the
    /// fixtures left exactly as they were. Returns stderr with the temp dir's path filtered.
    fn failing(&self, args: &[&str]) -> String {
        let before = self.snapshot();
        let fixtures_before = fixture_trees();
        let r = run(&self.work(), args);
        assert_eq!(r.code, 2, "{args:?}: expected exit 2: {}", r.stderr);
        assert_eq!(r.stdout, "", "errors go to stderr");
        assert_eq!(self.snapshot(), before, "{args:?}: the temp dir changed");
        assert_eq!(
            fixture_trees(),
            fixtures_before,
            "{args:?}: fixtures changed"
        );
        self.filter(&r.stderr)
    }

    fn filter(&self, text: &str) -> String {
        let real = std::fs::canonicalize(self.tmp.path()).unwrap();
        text.replace(real.to_str().unwrap(), "[TMP]")
            .replace(self.tmp.path().to_str().unwrap(), "[TMP]")
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.file_type().is_symlink() {
            out.insert(
                rel,
                format!("-> {}", std::fs::read_link(&p).unwrap().display()),
            );
        } else if meta.is_dir() {
            out.insert(format!("{rel}/"), String::new());
            walk(root, &p, out);
        } else {
            out.insert(
                rel,
                String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into(),
            );
        }
    }
}

/// The fixture directories the policies below read from.
fn fixture_trees() -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    (
        read_tree(&fixtures().join("example")),
        read_tree(&fixtures().join("istioctl")),
    )
}

/// A policy for 1.13.5 -> 1.14.1. Paths are written as given: relative ones are relative to the
/// policy file.
fn policy(iop: &Path, istioctl_old: &Path, istioctl_new: &Path) -> String {
    let sha = standin_sha256();
    format!(
        "apiVersion: istio-canary.dev/v1alpha1
kind: CanaryUpgrade
metadata:
  name: containment
spec:
  istioOperator: {}
  from:
    version: 1.13.5
  to:
    version: 1.14.1
  istioctl:
    \"1.13.5\": {{path: {}, sha256: {sha}}}
    \"1.14.1\": {{path: {}, sha256: {sha}}}
  waves:
  - name: canary
    namespaces: [bookinfo]
",
        iop.display(),
        istioctl_old.display(),
        istioctl_new.display()
    )
}

fn example_iop() -> PathBuf {
    fixtures().join("example/iop.yaml")
}

fn standin(version: &str) -> PathBuf {
    fixtures().join(format!("istioctl/istioctl-{version}"))
}

fn snap(name: &str, stderr: &str) {
    snapshot_settings().bind(|| insta::assert_snapshot!(name, stderr));
}

#[test]
fn refuses_an_out_that_holds_the_policy() {
    let sb = Sandbox::new();
    sb.previous_out("bundles");
    let text = policy(&example_iop(), &standin("1.13.5"), &standin("1.14.1"));
    sb.write("bundles/canary.yaml", &text);
    let stderr = sb.failing(&[
        "compile",
        "--policy",
        "bundles/canary.yaml",
        "--out",
        "bundles",
    ]);
    snap("containment-policy-inside-out", &stderr);
}

#[test]
fn refuses_an_out_that_holds_the_istiooperator_spec() {
    let sb = Sandbox::new();
    sb.previous_out("bundles");
    let iop = std::fs::read_to_string(example_iop()).unwrap();
    sb.write("bundles/specs/iop.yaml", &iop);
    let text = policy(
        Path::new("bundles/specs/iop.yaml"),
        &standin("1.13.5"),
        &standin("1.14.1"),
    );
    sb.write("canary.yaml", &text);
    let stderr = sb.failing(&["compile", "--policy", "canary.yaml", "--out", "bundles"]);
    snap("containment-spec-inside-out", &stderr);
}

#[test]
fn refuses_an_out_that_holds_the_inventory() {
    let sb = Sandbox::new();
    sb.previous_out("bundles");
    sb.write(
        "bundles/inventory.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: bookinfo, labels: {istio.io/rev: 1-13-5}}}\n",
    );
    let text = policy(&example_iop(), &standin("1.13.5"), &standin("1.14.1")).replace(
        "  from:\n",
        "  inventory: bundles/inventory.yaml\n  from:\n",
    );
    sb.write("canary.yaml", &text);
    let stderr = sb.failing(&["compile", "--policy", "canary.yaml", "--out", "bundles"]);
    snap("containment-inventory-inside-out", &stderr);
}

#[test]
fn refuses_an_out_that_holds_a_pinned_istioctl_even_with_force() {
    let sb = Sandbox::new();
    sb.previous_out("bundles");
    sb.istioctl_copy("bundles/vendor/istioctl-1.14.1");
    let text = policy(
        &example_iop(),
        &standin("1.13.5"),
        Path::new("bundles/vendor/istioctl-1.14.1"),
    );
    sb.write("canary.yaml", &text);
    let stderr = sb.failing(&[
        "compile",
        "--policy",
        "canary.yaml",
        "--out",
        "bundles",
        "--force",
    ]);
    snap("containment-istioctl-inside-out", &stderr);
}

#[test]
fn refuses_the_current_directory_or_an_ancestor_as_out_when_it_holds_the_policy() {
    let sb = Sandbox::new();
    sb.previous_out(".");
    let text = policy(&example_iop(), &standin("1.13.5"), &standin("1.14.1"));
    sb.write("canary.yaml", &text);
    let dot = sb.failing(&["compile", "--policy", "canary.yaml", "--out", "."]);
    snap("containment-out-is-current-dir", &dot);
    let up = sb.failing(&[
        "compile",
        "--policy",
        "canary.yaml",
        "--out",
        "..",
        "--force",
    ]);
    snap("containment-out-is-parent-dir", &up);
}

#[test]
fn a_symlinked_out_is_written_through_and_the_link_kept() {
    let sb = Sandbox::new();
    let real = sb.previous_out("real-bundles");
    std::fs::write(real.join("stale.yaml"), "from an older compile\n").unwrap();
    std::os::unix::fs::symlink("real-bundles", sb.work().join("bundles")).unwrap();
    let policy_arg = fixtures().join("example/canary.yaml");
    let policy_arg = policy_arg.to_str().unwrap();

    let r = run(
        &sb.work(),
        &["compile", "--policy", policy_arg, "--out", "bundles"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let link = sb.work().join("bundles");
    assert!(link.is_symlink(), "the link was replaced");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("real-bundles")
    );
    assert!(!real.join("stale.yaml").exists(), "the target is stale");

    // The target holds exactly what a compile into a plain directory holds.
    let plain = run(
        &sb.work(),
        &["compile", "--policy", policy_arg, "--out", "plain"],
    );
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert_eq!(read_tree(&real), read_tree(&sb.work().join("plain")));
    let mut left: Vec<_> = std::fs::read_dir(sb.work())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["bundles", "plain", "real-bundles"]);
    let top: Vec<_> = std::fs::read_dir(sb.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top, ["work"]);
}

#[test]
fn a_dangling_symlink_out_is_refused() {
    let sb = Sandbox::new();
    std::os::unix::fs::symlink("missing", sb.work().join("bundles")).unwrap();
    let policy_arg = fixtures().join("example/canary.yaml");
    let stderr = sb.failing(&[
        "compile",
        "--policy",
        policy_arg.to_str().unwrap(),
        "--out",
        "bundles",
    ]);
    snap("containment-dangling-symlink-out", &stderr);
}

#[test]
fn a_symlinked_out_to_a_foreign_directory_is_protected_like_the_directory() {
    let sb = Sandbox::new();
    sb.write("mine/notes.txt", "keep\n");
    std::os::unix::fs::symlink("mine", sb.work().join("bundles")).unwrap();
    let policy_arg = fixtures().join("example/canary.yaml");
    let stderr = sb.failing(&[
        "compile",
        "--policy",
        policy_arg.to_str().unwrap(),
        "--out",
        "bundles",
    ]);
    assert!(
        stderr
            .starts_with("error: refusing to replace bundles: it was not written by istio-canary"),
        "{stderr}"
    );
}
