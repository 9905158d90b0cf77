//! Every file the tool reads goes through one bounded reader: a FIFO, a directory, a device (or
//! a symbolic link to one) and a link to nothing are refused by name, and a file over its limit
//! by size, each with exit 2, at once and without writing anything. Each case runs the real
//! binary under a wall-clock limit, so a reader that blocks fails its test instead of hanging.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{copy_example, fixtures, run_bounded, snapshot_settings};

/// Wall-clock limit of one run: a refusal takes milliseconds, a blocked read forever.
const TIME_LIMIT: Duration = Duration::from_secs(20);
/// Address-space limit of one run, in KiB (`ulimit -v`): reading `/dev/zero` whole exceeds it.
const MEMORY_LIMIT_KIB: u64 = 1_000_000;

/// What is under `dir`, without opening anything that is not a regular file: the bytes of each
/// file, the target of each link, and the type of everything else.
fn state(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
            let what = if kind.is_symlink() {
                format!("link to {}", std::fs::read_link(&path).unwrap().display())
            } else if kind.is_dir() {
                walk(root, &path, out);
                "directory".to_string()
            } else if kind.is_file() {
                let len = std::fs::metadata(&path).unwrap().len();
                if len > 1 << 20 {
                    format!("{len} bytes")
                } else {
                    common::sha256_hex(&std::fs::read(&path).unwrap())
                }
            } else {
                format!("{kind:?}")
            };
            out.insert(rel, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Runs `args` in `dir` under the limits and requires exit 2, nothing on stdout and every file
/// under `dir` as it was; snapshots stderr as `readers-NAME`.
fn refused(name: &str, dir: &Path, args: &[&str]) {
    let before = state(dir);
    let r = run_bounded(dir, args, TIME_LIMIT, MEMORY_LIMIT_KIB);
    assert_eq!(r.code, 2, "{name}: {}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "", "{name}");
    assert_eq!(state(dir), before, "{name}: a file changed");
    snapshot_settings().bind(|| insta::assert_snapshot!(format!("readers-{name}"), r.stderr));
}

fn mkfifo(path: &Path) {
    use rustix::fs::{mkfifoat, Mode, CWD};
    mkfifoat(CWD, path, Mode::from_raw_mode(0o600)).unwrap();
}

fn replace_with(path: &Path, make: impl FnOnce(&Path)) {
    std::fs::remove_file(path).unwrap();
    make(path);
}

fn link_to(target: &str) -> impl FnOnce(&Path) + '_ {
    move |path| std::os::unix::fs::symlink(target, path).unwrap()
}

/// A file one byte over `limit`, made sparse so that it costs no disk.
fn over(limit: u64) -> impl FnOnce(&Path) {
    move |path| {
        std::fs::File::create(path)
            .unwrap()
            .set_len(limit + 1)
            .unwrap()
    }
}

/// A scratch directory holding the example's policy (pins made absolute) as `canary.yaml`, a
/// previous compile in `bundles/`, and a FIFO `fifo.yaml`.
fn policy_case() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixtures().join("example/canary.yaml")).unwrap();
    let ctl = fixtures().join("istioctl");
    let text = text
        .replace("../istioctl", ctl.to_str().unwrap())
        .replace("istioOperator: iop.yaml", "istioOperator: spec.yaml");
    std::fs::write(tmp.path().join("canary.yaml"), text).unwrap();
    std::fs::copy(
        fixtures().join("example/iop.yaml"),
        tmp.path().join("spec.yaml"),
    )
    .unwrap();
    let out = tmp.path().join("bundles");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join(".istio-canary"), "# previous compile\n").unwrap();
    mkfifo(&tmp.path().join("fifo.yaml"));
    tmp
}

// ---------------------------------------------------------------------------------------------
// compile: the policy and the IstioOperator spec

#[test]
fn a_fifo_as_the_policy_is_refused() {
    let case = policy_case();
    refused(
        "policy-fifo",
        case.path(),
        &["compile", "--policy", "fifo.yaml"],
    );
}

#[test]
fn a_directory_as_the_policy_is_refused() {
    let case = policy_case();
    refused(
        "policy-directory",
        case.path(),
        &["compile", "--policy", "bundles"],
    );
}

#[test]
fn a_device_as_the_policy_is_refused() {
    let case = policy_case();
    refused(
        "policy-dev-zero",
        case.path(),
        &["compile", "--policy", "/dev/zero"],
    );
}

#[test]
fn a_link_to_nothing_as_the_policy_does_not_exist() {
    let case = policy_case();
    std::os::unix::fs::symlink("gone.yaml", case.path().join("link.yaml")).unwrap();
    refused(
        "policy-dangling-link",
        case.path(),
        &["compile", "--policy", "link.yaml"],
    );
}

#[test]
fn a_fifo_as_the_spec_is_refused() {
    let case = policy_case();
    replace_with(&case.path().join("spec.yaml"), mkfifo);
    refused("spec-fifo", case.path(), &["compile"]);
}

/// Names `file` as the policy's inventory.
fn inventory_at(case: &tempfile::TempDir, file: &str) {
    let policy = case.path().join("canary.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        text.replace("  from:\n", &format!("  inventory: {file}\n  from:\n")),
    )
    .unwrap();
}

#[test]
fn a_fifo_as_the_inventory_is_refused() {
    let case = policy_case();
    inventory_at(&case, "fifo.yaml");
    refused("inventory-fifo", case.path(), &["compile"]);
}

#[test]
fn an_inventory_over_its_limit_is_refused_before_it_is_read() {
    let case = policy_case();
    inventory_at(&case, "huge.yaml");
    over(istio_canary::yamlin::INVENTORY_LIMIT)(&case.path().join("huge.yaml"));
    refused("inventory-over-limit", case.path(), &["compile"]);
}

/// Points the policy of `case` at `path` for the new version's istioctl (1.28.0).
fn pin_new_at(case: &tempfile::TempDir, path: &str) {
    let policy = case.path().join("canary.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    let ctl = fixtures().join("istioctl/istioctl-1.28.0");
    std::fs::write(&policy, text.replace(ctl.to_str().unwrap(), path)).unwrap();
}

#[test]
fn a_fifo_as_an_istioctl_pin_is_refused() {
    let case = policy_case();
    pin_new_at(&case, "fifo.yaml");
    refused("istioctl-fifo", case.path(), &["compile"]);
}

#[test]
fn an_istioctl_over_its_limit_is_refused_before_it_is_read() {
    let case = policy_case();
    pin_new_at(&case, "huge");
    over(istio_canary::yamlin::ISTIOCTL_LIMIT)(&case.path().join("huge"));
    refused("istioctl-over-limit", case.path(), &["compile"]);
}

// ---------------------------------------------------------------------------------------------
// verify, show and compile --check: plan.json and the files of the output

const PHASE_FILE: &str = "bundles/03-migrate-canary/01-namespace_bookinfo.yaml";

#[test]
fn verify_refuses_a_plan_json_that_is_a_fifo() {
    let (tmp, out) = copy_example();
    replace_with(&out.join("plan.json"), mkfifo);
    refused("verify-plan-fifo", tmp.path(), &["verify", "bundles"]);
}

#[test]
fn show_refuses_a_plan_json_that_is_a_fifo() {
    let (tmp, out) = copy_example();
    replace_with(&out.join("plan.json"), mkfifo);
    refused("show-plan-fifo", tmp.path(), &["show", "03"]);
}

#[test]
fn verify_refuses_a_plan_json_linked_to_dev_zero() {
    let (tmp, out) = copy_example();
    replace_with(&out.join("plan.json"), link_to("/dev/zero"));
    refused("verify-plan-dev-zero", tmp.path(), &["verify", "bundles"]);
}

#[test]
fn verify_says_a_plan_json_link_leads_nowhere() {
    let (tmp, out) = copy_example();
    replace_with(&out.join("plan.json"), link_to("gone.json"));
    refused(
        "verify-plan-dangling-link",
        tmp.path(),
        &["verify", "bundles"],
    );
}

#[test]
fn verify_refuses_a_plan_json_over_its_limit() {
    let (tmp, out) = copy_example();
    replace_with(
        &out.join("plan.json"),
        over(istio_canary::yamlin::PLAN_JSON_LIMIT),
    );
    refused("verify-plan-over-limit", tmp.path(), &["verify", "bundles"]);
}

#[test]
fn verify_refuses_a_phase_file_that_is_a_fifo() {
    let (tmp, _out) = copy_example();
    replace_with(&tmp.path().join(PHASE_FILE), mkfifo);
    refused("verify-phase-fifo", tmp.path(), &["verify", "bundles"]);
}

#[test]
fn show_refuses_a_phase_file_that_is_a_fifo() {
    let (tmp, _out) = copy_example();
    replace_with(&tmp.path().join(PHASE_FILE), mkfifo);
    refused("show-phase-fifo", tmp.path(), &["show", "03"]);
}

#[test]
fn verify_refuses_a_phase_file_linked_to_dev_zero() {
    let (tmp, _out) = copy_example();
    replace_with(&tmp.path().join(PHASE_FILE), link_to("/dev/zero"));
    refused("verify-phase-dev-zero", tmp.path(), &["verify", "bundles"]);
}

#[test]
fn verify_refuses_a_file_over_its_limit() {
    let (tmp, out) = copy_example();
    replace_with(
        &out.join("PLAN.md"),
        over(istio_canary::yamlin::OUTPUT_FILE_LIMIT),
    );
    refused("verify-file-over-limit", tmp.path(), &["verify", "bundles"]);
}

#[test]
fn check_refuses_a_fifo_in_out() {
    let (tmp, _out) = copy_example();
    replace_with(&tmp.path().join(PHASE_FILE), mkfifo);
    let policy = fixtures().join("example/canary.yaml");
    refused(
        "check-fifo",
        tmp.path(),
        &[
            "compile",
            "--check",
            "--policy",
            policy.to_str().unwrap(),
            "--out",
            "bundles",
        ],
    );
}
